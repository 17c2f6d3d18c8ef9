# stand-in for the remote-code Kimi K2.5 processor
class KimiK25Processor:
    pass
