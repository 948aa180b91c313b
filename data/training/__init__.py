"""Training smoke test: a tiny model, SFT on our exports, GRPO in our environments with our reward."""
