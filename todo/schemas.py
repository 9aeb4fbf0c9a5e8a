"""Schemas shared by every resource: the problem body and the strict field types."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import marshmallow as ma
from marshmallow import fields


class ProblemSchema(ma.Schema):
    """RFC 7807 problem details (documentation only; `todo.problems` builds the bodies)."""

    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True, metadata={"example": "Bad Request"})
    status = fields.Integer(required=True, metadata={"example": 400})
    detail = fields.String(required=True)
    instance = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Per-field messages, keyed by location (json, query, path)."},
    )


# What JSON Schema's (ECMA-262) `\s` matches, so the documented patterns and the trimming agree.
WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


NO_NUL_PATTERN = r"^[^\u0000]*$"


class Text(fields.String):
    """A string without NUL characters, which PostgreSQL cannot store in text columns."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"pattern": NO_NUL_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.error_messages["nul"] = "Must not contain NUL characters."

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise self.make_error("nul")
        return text


class TrimmedString(Text):
    """A string with surrounding whitespace removed before its length is checked."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip(WHITESPACE)


def trimmed_length_pattern(maximum: int) -> str:
    """Non-blank, NUL-free, at most `maximum` characters once surrounding whitespace is removed."""
    visible = r"[^\s\u0000]"
    return rf"^\s*{visible}([^\u0000]{{0,{maximum - 2}}}{visible})?\s*$"


class StrictBoolean(fields.Boolean):
    """Only JSON `true` and `false`; no "yes", 1 or "true" strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class IsoDate(fields.Date):
    """Exactly `YYYY-MM-DD` (Python would also accept `20261201` and week dates)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or not ISO_DATE.match(value):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value, attr, data, **kwargs)


class CaseInsensitiveChoice(fields.String):
    """A string matched case-insensitively against `choices` and returned in canonical case."""

    def __init__(self, choices: tuple[str, ...], **kwargs: Any) -> None:
        metadata = {"pattern": case_insensitive_pattern(choices), **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.choices = {choice.casefold(): choice for choice in choices}
        self.error_messages["choice"] = "Must be one of: {}.".format(", ".join(choices))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return self.choices[text.casefold()]
        except KeyError:
            raise self.make_error("choice") from None


def case_insensitive_pattern(choices: tuple[str, ...]) -> str:
    """`("Low",)` -> `^([Ll][Oo][Ww])$`: JSON Schema patterns have no case-insensitive flag."""
    alternatives = (
        "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in choice)
        for choice in choices
    )
    return "^({})$".format("|".join(alternatives))
