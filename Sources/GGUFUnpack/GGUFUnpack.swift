// A GGUF back to a Hugging Face checkpoint lives here (issues 17 and 18): `dequantize FILE.gguf OUT` and
// `convert FILE.gguf OUT --to hf`.
