# stand-in for the remote-code Kimi K2.5 modeling
