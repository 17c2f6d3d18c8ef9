# stand-in for the remote-code Kimi K2.5 configuration
class KimiK25Config:
    model_type = "kimi_k25"
