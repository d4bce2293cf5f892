"""What a bad setting is: its name and what is wrong with it, one or several at once (ConfigurationError).

Apart from shared.settings so that the modules that judge a setting's value (shared.defender.base_url) can say what is
wrong without importing the settings.
"""

from __future__ import annotations

from dataclasses import dataclass


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
