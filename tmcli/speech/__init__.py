"""Speech: phones (pocketsphinx), generator features, synthetic speech (espeak-ng)."""
