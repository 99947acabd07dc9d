"""A video student's `tm export` graphs behind the interfaces tm renders with: its chunk step
(as WanAudioTransformer.step), the VAE's encoder and its streaming decoder."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from tmcli.stream.engine import ExportedModel, FixedCache, empty_cache


class ExportedVideoChunkStep:
    """A video export's chunk-step graph behind WanAudioTransformer's streaming interface, for
    VideoStreamingGenerator. The stream's geometry (which video frames and audio rows a latent
    frame has, the image condition) is WanAudioTransformer's own, read from the manifest's config."""

    def __init__(self, model: ExportedModel):
        self.exported = model
        m = model.manifest
        self.config = SimpleNamespace(**m["model"])
        self.audio_rows_per_chunk = m["audio"]["rows_per_chunk"]
        self._empty = empty_cache(m)

    # WanAudioTransformer's geometry, read from self.config (imported here: diffusers' Wan takes
    # 0.6 s to import, and `tm render` of a motion model must not pay for it)
    @property
    def sigmas(self) -> list[float]:
        return _wan().sigmas.fget(self)

    def video_frames(self, latent_frame: int) -> range:
        return _wan().video_frames(self, latent_frame)

    def audio_rows(self, first_latent: int, latent_frames: int) -> range:
        return _wan().audio_rows(self, first_latent, latent_frames)

    def condition_latents(
        self, portrait: torch.Tensor, first_latent: int, latent_frames: int
    ) -> torch.Tensor:
        return _wan().condition_latents(self, portrait, first_latent, latent_frames)

    def new_cache(self) -> FixedCache:
        return FixedCache([t.clone() for t in self._empty])

    def cross_kv(self, batch: int, image_embeds=None) -> None:
        """The prompt's keys and values are constants inside the graph."""
        return None

    def step(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        cond: torch.Tensor,
        audio: torch.Tensor,
        cache: FixedCache,
        cross=None,
        write: bool = False,
    ) -> torch.Tensor:
        pad = self.audio_rows_per_chunk - audio.shape[1]  # the first chunk hears fewer rows: padded, masked
        audio = torch.cat([audio.new_zeros(audio.shape[0], pad, audio.shape[2]), audio], dim=1)
        velocity, *new_cache = self.exported.run(
            "chunk_step", latents, timestep, cond, audio, torch.tensor([write]), *cache.tensors
        )
        if write:
            cache.update(new_cache)
        return velocity.float()


def _wan() -> type:
    from tmcli.video.wan_audio import WanAudioTransformer

    return WanAudioTransformer


class ExportedVAE:
    """A video export's VAE graphs: the portrait's encoder and the streaming decoder's two steps."""

    def __init__(self, model: ExportedModel):
        self.exported = model

    def encode(self, frame: torch.Tensor) -> torch.Tensor:
        """One frame (1, 3, 1, S, S) in [-1, 1] -> its normalised latent (1, z, 1, s, s)."""
        return self.exported.run("vae_encode", frame)[0].float()

    def decoder(self) -> ExportedVAEDecoder:
        return ExportedVAEDecoder(self.exported)


class ExportedVAEDecoder:
    """StreamingVAEDecoder's `decode` run by the graphs: the first latent frame by
    vae_decode_first, each later one by vae_decode_next with the cache it gave back."""

    def __init__(self, model: ExportedModel):
        self.exported, self.cache = model, None

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        frames = []
        for i in range(latents.shape[2]):
            latent = latents[:, :, i : i + 1]
            if self.cache is None:
                out, *self.cache = self.exported.run("vae_decode_first", latent)
            else:
                out, *self.cache = self.exported.run("vae_decode_next", latent, *self.cache)
            frames.append(out.float())
        return torch.cat(frames, dim=2)
