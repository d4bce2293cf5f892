"""What a bad setting is: its name and what is wrong with it, one or several at once (ConfigurationError).

Apart from shared.settings so that the modules that judge a setting's value (shared.defender.base_url) can say what is
wrong without importing the settings. A problem names its setting and what is wrong; it repeats the value only through
`shown` (a short, plain value) or `shown_url` (a URL's scheme and host), since the message reaches the log and the
key holders' 503 answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit


@dataclass(frozen=True)
class SettingProblem:
    """One setting that is missing or wrong, and why (never its value when that may be a secret)."""

    setting: str
    reason: str


class ConfigurationError(ValueError):
    """Settings are missing or wrong: each problem names its setting and says how to fix it."""

    def __init__(self, reason: str, *, setting: str) -> None:
        super().__init__(reason)
        self.problems: tuple[SettingProblem, ...] = (SettingProblem(setting, reason),)

    @classmethod
    def of(cls, problems: list[SettingProblem]) -> ConfigurationError:
        """One error for several problems (every bad setting at once, not the first alone)."""
        error = cls(" ".join(problem.reason for problem in problems), setting=problems[0].setting)
        error.problems = tuple(problems)
        return error


#: What a bad value may be repeated as it is: the characters of names, numbers, lists, GUIDs and schedules. A URL
#: (':'), its user info ('@'), query ('?', '&', '%'), a connection string (';') or anything long never matches.
_SHOWABLE = re.compile(r"[A-Za-z0-9 ._,*+/=-]{0,64}", re.ASCII)
#: A run of base64 characters mixing letters and digits, as long as a key or a signature is at the least (a SAS
#: `sig` value, a function key, an account key): never repeated, whichever setting it was put in. Names, GUIDs (runs
#: of 12 at most), numbers and schedules have no such run.
_KEY_LIKE = re.compile(r"(?=[A-Za-z0-9+/=]*[0-9])(?=[A-Za-z0-9+/=]*[A-Za-z])[A-Za-z0-9+/=]{20,}", re.ASCII)
#: A URL's scheme and host as a problem may name them (a host as DNS or an IP address spells it).
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,15}", re.ASCII)
_HOST = re.compile(r"[a-z0-9.-]{1,253}|[0-9a-f:.]{2,45}", re.ASCII)


def showable(value: str) -> bool:
    """Whether a problem may repeat `value` as it is (see `shown`)."""
    return _SHOWABLE.fullmatch(value) is not None and _KEY_LIKE.search(value) is None


def shown(value: str) -> str:
    """A bad setting's value as a problem (an answer, a log line) may repeat it: quoted when it is short and made only
    of what names, numbers, lists and schedules are made of; otherwise only its length, since it may hold a secret
    that was put in the wrong setting (a password, a signature, a key)."""
    if showable(value):
        return repr(value)
    return f"a value of {len(value)} characters (not shown: it may hold a secret)"


def split_url(value: str) -> SplitResult | None:
    """`value` split as a URL, or None where urllib cannot read it (a bad IPv6 host, a port that is not a number):
    its error would repeat part of the value, and a ValueError escaping a settings check would hide every other
    problem behind a start-up failure."""
    try:
        parts = urlsplit(value)
        _ = (parts.hostname, parts.port)
    except ValueError:
        return None
    return parts


def shown_url(value: str) -> str:
    """A URL setting's value as a problem may name it: its scheme and host at most, never its user info, port, path,
    query or fragment (where a password or a SAS signature would be)."""
    try:
        parts = urlsplit(value)
        scheme, host = parts.scheme, parts.hostname or ""
    except ValueError:
        scheme, host = "", ""
    if not (_SCHEME.fullmatch(scheme) and _HOST.fullmatch(host)):
        return f"a value of {len(value)} characters that is not a URL (not shown: it may hold a secret)"
    return repr(f"{scheme}://[{host}]" if ":" in host else f"{scheme}://{host}")
