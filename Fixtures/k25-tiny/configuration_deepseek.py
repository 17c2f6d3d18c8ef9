# stand-in for the remote-code DeepSeek-V3 configuration
class DeepseekV3Config:
    model_type = "kimi_k2"
