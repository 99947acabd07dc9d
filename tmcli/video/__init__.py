"""The video space: the Wan audio transformer and the streaming VAE that decodes its latents."""
