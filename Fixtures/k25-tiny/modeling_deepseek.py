# stand-in for the remote-code DeepSeek-V3 modeling
