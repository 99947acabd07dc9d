import pytest

from tmcli.core.config import Preset, load_preset
from tmcli.core.errors import ConfigError


def test_default_preset_matches_the_dataclass_defaults():
    assert load_preset("default") == Preset()


def test_flags_override_presets_and_none_means_unset():
    still = load_preset("still")
    assert still.controls.pose_intensity == 0.0
    p = still.with_overrides(output={"fps": 30, "size": None}, controls={"pose_intensity": 0.5})
    assert p.output.fps == 30.0 and p.output.size == 512 and p.controls.pose_intensity == 0.5


def test_presets_ship_inside_the_package():
    from importlib import resources

    from tmcli.core.config import preset_names

    shipped = resources.files("tmcli") / "presets"
    assert {"default", "still", "tiny", "wan-1.3b-audio"} <= set(preset_names())
    assert all((shipped / f"{name}.toml").is_file() for name in preset_names())


def test_controls_live_in_one_table():
    """The same control in two tables let `still` leave a learned generator's head moving."""
    import dataclasses

    from tmcli.core.config import ControlSettings

    names = {f.name for f in dataclasses.fields(ControlSettings)}
    preset = Preset()
    for table in dataclasses.fields(Preset):
        section = getattr(preset, table.name)
        if table.name == "controls" or section is None:
            continue
        assert not names & {f.name for f in dataclasses.fields(section)}


def test_unknown_keys_and_wrong_types_are_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[output]\nfsp = 30\n")
    with pytest.raises(ConfigError, match="unknown setting \\[output\\] fsp"):
        load_preset(str(bad))
    bad.write_text("[outptu]\nfps = 30\n")
    with pytest.raises(ConfigError, match="unknown table"):
        load_preset(str(bad))
    bad.write_text('[output]\nfps = "fast"\n')
    with pytest.raises(ConfigError, match="must be float"):
        load_preset(str(bad))


@pytest.mark.parametrize(
    "table, setting, message",
    [
        ("video", 'vae = "huge"', "vae must be one of"),
        ("video", "vae_window_frames = 8", "vae_window_frames must be 1 \\+ 4k"),
        ("video", "vae_window_frames = -3", "vae_window_frames must be 1 \\+ 4k"),  # -3 % 4 == 1 in Python
        ("video", "mouth_weight = 0.5", "mouth_weight must be 1 or more"),
        ("video", "size = 100", "size must be a multiple of 16"),
        ("distill", "student_steps = 5", "student steps must be 1-4"),
        ("distill", "data_weight = -1.0", "must not be negative"),
        ("distill", "student_steps = 1\ndata_weight = 4.0", "data_weight needs at least 2 student steps"),
    ],
)
def test_presets_refuse_what_the_backend_cannot_run(tmp_path, table, setting, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(f"[{table}]\n{setting}\n")
    with pytest.raises(ConfigError, match=message):
        load_preset(str(bad))
