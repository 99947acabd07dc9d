"""What every stage builds on: config, errors, console, audio and media I/O, attention with a KV
cache, the runtime (devices, threads, queues)."""
