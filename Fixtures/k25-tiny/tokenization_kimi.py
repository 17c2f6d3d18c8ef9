# stand-in for the remote-code tiktoken tokenizer
class TikTokenTokenizer:
    pass
