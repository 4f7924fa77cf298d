"""Merge a trained adapter (``llamafactory-cli export``) and prove it: logits and chat-template parity."""
