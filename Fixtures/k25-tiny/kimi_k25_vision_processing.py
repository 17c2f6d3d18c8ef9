# stand-in for the remote-code Kimi K2.5 image and video processing
class KimiK25VisionProcessor:
    pass
