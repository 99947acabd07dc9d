"""tm's own exceptions. Library code raises these; only the CLI turns them into a message
and an exit code (see tmcli/cli/app.py)."""

import signal


class TmError(Exception):
    """Base class: `message` says what is wrong, `hint` what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class InputError(TmError):
    """An input file is missing, unreadable or of the wrong kind."""

    exit_code = 2


class AudioError(InputError):
    """Audio that cannot be decoded, or has no samples."""


class ImageError(InputError):
    """A portrait that cannot be decoded."""


class NoFaceError(InputError):
    """A portrait in which no face (or not the asked-for face) was found."""


class OutputError(TmError):
    """The output cannot be written."""

    exit_code = 3


class ExportError(TmError):
    """An export that cannot be made, or that failed its check against PyTorch."""


class EspeakError(TmError):
    """The espeak-ng library is missing or failed."""


class ConfigError(TmError):
    """A preset or an option has an unknown key or a bad value."""

    exit_code = 2


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread (see tmcli/cli/app.py) so that every `finally`
    runs: ffmpeg and the workers are stopped and temporary files removed. A BaseException, as
    KeyboardInterrupt is: no `except Exception` (nor a batch's `except TmError`) swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        super().__init__(f"stopped by {self.name}")
