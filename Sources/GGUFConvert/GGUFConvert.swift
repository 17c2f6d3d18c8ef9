// convert --to gguf lives here (issue 18): the GGUF container writer, the HF → deepseek2 tensor plan, the INT4 →
// Q4_0 nibble repack and the tokenizer's GGUF metadata.
