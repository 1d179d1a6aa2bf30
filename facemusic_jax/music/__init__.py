"""Stage 2, emotion -> music: tokenizer, sampling, generation, the symbolic estimator and evaluation."""
