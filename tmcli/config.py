"""Presets: TOML files whose tables map one to one onto frozen dataclasses.

Precedence is flag > preset > default. Unknown tables or keys are an error, so a typo in a
preset never passes silently.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


@dataclasses.dataclass(frozen=True)
class DriverSettings:
    lead: float = 0.04  # s the lips move ahead of the sound
    jaw_gain: float = 1.4  # how wide the mouth opens
    envelope_floor: float = 0.0  # jaw opening at the quietest voiced sound, relative to the loudest
    pose_intensity: float = 1.0  # scales head motion (0 = still head)
    blink_min: float = 2.0  # s between blinks, drawn uniformly in [min, max]
    blink_max: float = 6.0
    gaze_x: float = 0.0  # where the eyes rest, [-1, 1]
    gaze_y: float = 0.0
    brow_gain: float = 1.0


@dataclasses.dataclass(frozen=True)
class WarpSettings:
    field_resolution: int = 64  # coarse grid the smooth warp is evaluated on
    border_anchors: int = 16  # fixed points per crop side
    inverse_iterations: int = 4
    stiffness: float = 1e-4  # thin-plate regularisation (relative to the crop side)


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    size: int = 512  # side of the square face crop the renderer works at
    fps: float = 25.0
    crop: bool = False  # write the face crop instead of pasting it back into the portrait
    crf: int = 18  # x264 quality (lower = better, larger files)
    x264_preset: str = "veryfast"

    def validate(self) -> None:
        if self.size < 64 or self.size % 2:
            raise ConfigError(f"size must be an even number >= 64, got {self.size}")
        if not 1 <= self.fps <= 120:
            raise ConfigError(f"fps must be between 1 and 120, got {self.fps}")


@dataclasses.dataclass(frozen=True)
class Preset:
    output: OutputSettings = OutputSettings()
    driver: DriverSettings = DriverSettings()
    warp: WarpSettings = WarpSettings()

    def with_overrides(self, **tables: dict[str, Any]) -> "Preset":
        """Apply flags: `with_overrides(output={"fps": 30})`; None values are ignored."""
        changes = {}
        for table, values in tables.items():
            values = {k: v for k, v in values.items() if v is not None}
            changes[table] = _replace(getattr(self, table), values, table)
        preset = dataclasses.replace(self, **changes)
        preset.output.validate()
        return preset


def _replace(section, values: dict[str, Any], table: str):
    known = {f.name: f for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting [{table}] {key}", hint=f"known: {', '.join(known)}")
        expected = type(getattr(section, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(values[key], expected):
            raise ConfigError(f"[{table}] {key} must be {expected.__name__}, got {value!r}")
    return dataclasses.replace(section, **values)


def load_preset(name_or_path: str = "default") -> Preset:
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
        raise ConfigError(f"preset {name_or_path} not found", hint=f"known presets: {', '.join(known)}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    preset = Preset()
    tables = {f.name for f in dataclasses.fields(Preset)}
    for table in data:
        if table not in tables:
            raise ConfigError(f"unknown table [{table}] in {path}", hint=f"known: {', '.join(sorted(tables))}")
    return preset.with_overrides(**{t: dict(v) for t, v in data.items()})
