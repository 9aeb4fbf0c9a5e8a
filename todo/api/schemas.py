"""Schemas shared by every resource: the problem body and the strict field types."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate
from werkzeug.datastructures import ETags
from werkzeug.http import parse_etags


class BodySchema(ma.Schema):
    """A request body: a JSON object (marshmallow says only "Invalid input type." of others)."""

    error_messages = {"type": "The body must be a JSON object, e.g. {\"title\": \"...\"}."}


class ProblemSchema(ma.Schema):
    """RFC 7807 problem details (documentation only; `todo.api.problems` builds the bodies)."""

    type = fields.String(required=True, metadata={"example": "about:blank"})
    title = fields.String(required=True, metadata={"example": "Bad Request"})
    status = fields.Integer(required=True, metadata={"example": 400})
    detail = fields.String(required=True)
    instance = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Per-field messages, keyed by location (json, query, path)."},
    )


# What JSON Schema's (ECMA-262) `\s` matches: the characters trimmed from strings.
WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def _character_class(characters: str) -> str:
    """The inside of a regex character class matching exactly `characters` (`\\uXXXX`
    escapes, which ECMA-262, Python and Rust read alike; consecutive runs as ranges)."""
    codes = sorted({ord(c) for c in characters})
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][-1] + 1:
            runs[-1].append(code)
        else:
            runs.append([code])
    return "".join(
        f"\\u{run[0]:04x}-\\u{run[-1]:04x}" if len(run) > 2
        else "".join(f"\\u{code:04x}" for code in run)
        for run in runs
    )


# The same set spelled out for documented patterns: `\s` itself means something else in
# Python's `re` (with or without re.ASCII) and in Rust's `regex`, which validators and test
# generators use, so a pattern with `\s` would not say the same thing to all of them.
WHITESPACE_CLASS = _character_class(WHITESPACE)


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
    """A string with surrounding whitespace removed, then 1-`maximum` characters long.

    The document states the bound as a pattern on the value sent (`trimmed_length_pattern`):
    `minLength`/`maxLength` would count the whitespace that is removed, and so would reject
    `"  Buy milk  "`-style values the service accepts."""

    def __init__(self, maximum: int, *, length_error: str | None = None, **kwargs: Any) -> None:
        metadata = {"pattern": trimmed_length_pattern(maximum), **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)
        self.trimmed_length = validate.Length(1, maximum, error=length_error)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip(WHITESPACE)
        self.trimmed_length(text)
        return text


def trimmed_length_pattern(maximum: int) -> str:
    """Non-blank, NUL-free, at most `maximum` characters once surrounding whitespace is removed."""
    space = f"[{WHITESPACE_CLASS}]"
    visible = f"[^{WHITESPACE_CLASS}\\u0000]"
    return rf"^{space}*{visible}([^\u0000]{{0,{maximum - 2}}}{visible})?{space}*$"


class StrictBoolean(fields.Boolean):
    """Only JSON `true` and `false`; no "yes", 1 or "true" strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if value is True or value is False:
            return value
        raise self.make_error("invalid")


# Patterns are matched whole (`fullmatch`): `$` also matches before a final newline, and `\d`
# matches every script's digits.
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ASCII_DIGITS = re.compile(r"[0-9]+")


class IsoDate(fields.Date):
    """Exactly `YYYY-MM-DD` (Python would also accept `20261201` and week dates)."""

    default_error_messages = {
        "invalid": "Not a valid date: use YYYY-MM-DD, e.g. 2026-12-01.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value, attr, data, **kwargs)


class QueryInteger(fields.Integer):
    """A non-negative integer written in ASCII digits, as in a query string. Python's `int()`
    also reads `5_0`, `+5`, ` 5 ` and other scripts' digits (`٥`), which the contract does not
    allow to be reinterpreted."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not ASCII_DIGITS.fullmatch(value):
            raise self.make_error("invalid")
        number: int = super()._deserialize(value, attr, data, **kwargs)
        return number


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


# RFC 9110's `If-Match`: `*`, or entity tags (`"..."` or `W/"..."`) separated by commas.
ENTITY_TAG = r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"'
IF_MATCH_SYNTAX = re.compile(rf"[ \t]*(\*|{ENTITY_TAG}([ \t]*,[ \t]*{ENTITY_TAG})*)[ \t]*")
IF_MATCH_ERROR = "Not `*` or a list of quoted ETags."


class IfMatch(fields.Field[ETags]):
    """An `If-Match` value given in a body: `*` or quoted ETags as the `ETag` header gives
    them, read as werkzeug reads the header."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "pattern": f"^{IF_MATCH_SYNTAX.pattern}$",
                    **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> ETags:
        if not isinstance(value, str) or not IF_MATCH_SYNTAX.fullmatch(value):
            raise ma.ValidationError(IF_MATCH_ERROR)
        return parse_etags(value)


class OneOf(fields.Field[Any]):
    """A JSON object loaded by one of several schemas, the one named by its member `key`
    (e.g. `"op": "create"`). The OpenAPI document shows it as `oneOf` those schemas with a
    discriminator (todo/api/smorest.py)."""

    def __init__(self, key: str, schemas: Mapping[str, ma.Schema], *, example: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.schemas = dict(schemas)
        self.example = example

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ma.ValidationError(f"Must be a JSON object, e.g. {self.example}.")
        name = value.get(self.key)
        schema = self.schemas.get(name) if isinstance(name, str) else None
        if schema is None:
            message = (f"Must be one of: {', '.join(self.schemas)}." if self.key in value
                       else "Missing data for required field.")
            raise ma.ValidationError({self.key: [message]})
        return schema.load(value)
