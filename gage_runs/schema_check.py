"""A yes/no JSON Schema (2020-12) check for the few keywords the Gage file schema uses.

`jsonschema` costs a submit more to import than loading the project
takes. Nearly every Gage file is valid, and saying so needs only these
keywords, evaluated as jsonschema evaluates them: `type` (string, array,
object, boolean), `minLength`, `minItems`, `const` (a string), `anyOf`,
`$ref` (to `#/...` in the same schema), `properties`,
`patternProperties`, `additionalProperties`, `required` and `items`.
`gagefile` asks jsonschema only to explain a file this check rejects.

A schema with any other keyword is refused (ValueError), so the schema
cannot grow a rule this check would skip; tests/test_schema_check.py checks
it agrees with jsonschema.
"""

from __future__ import annotations

import re
from typing import Any

Schema = dict[str, Any]

_TYPES: dict[str, type] = {
    "string": str,
    "array": list,
    "object": dict,
    "boolean": bool,
}
_ANNOTATIONS = {"$schema", "$id", "$comment", "$defs", "title", "x-expected"}
_SUBSCHEMA = {"items", "additionalProperties"}
_SUBSCHEMA_LIST = {"anyOf"}
_SUBSCHEMA_MAP = {"properties", "patternProperties", "$defs"}
_OTHER = {"type", "minLength", "minItems", "const", "$ref", "required"}


class SchemaCheck:
    """`is_valid(instance)` for one schema of the keywords above."""

    def __init__(self, schema: Schema):
        _refuse_unknown(schema)
        self._root = schema

    def is_valid(self, instance: Any) -> bool:
        return self._valid(instance, self._root)

    def _valid(self, instance: Any, schema: Schema | bool) -> bool:
        if isinstance(schema, bool):
            return schema
        return all(
            self._keyword(instance, keyword, value, schema)
            for keyword, value in schema.items()
            if keyword not in _ANNOTATIONS
        )

    def _keyword(self, instance: Any, keyword: str, value: Any, schema: Schema) -> bool:
        if keyword == "type":
            return isinstance(instance, _TYPES[value])
        if keyword == "minLength":
            return not isinstance(instance, str) or len(instance) >= value
        if keyword == "minItems":
            return not isinstance(instance, list) or len(instance) >= value
        if keyword == "const":
            return instance == value
        if keyword == "anyOf":
            return any(self._valid(instance, sub) for sub in value)
        if keyword == "$ref":
            return self._valid(instance, self._resolve(value))
        if keyword == "items":
            return not isinstance(instance, list) or all(self._valid(x, value) for x in instance)
        if not isinstance(instance, dict):
            return True  # the rest apply to objects only
        if keyword == "required":
            return all(key in instance for key in value)
        if keyword == "properties":
            return all(self._valid(instance[k], sub) for k, sub in value.items() if k in instance)
        if keyword == "patternProperties":
            return all(
                self._valid(item, sub)
                for pattern, sub in value.items()
                for key, item in instance.items()
                if re.search(pattern, key)
            )
        assert keyword == "additionalProperties"
        known = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        return all(
            self._valid(item, value)
            for key, item in instance.items()
            if key not in known and not any(re.search(p, key) for p in patterns)
        )

    def _resolve(self, ref: str) -> Schema:
        node: Any = self._root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node


def _refuse_unknown(schema: Any) -> None:
    """Raise ValueError for a keyword (or a value of one) `SchemaCheck` does not know."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise ValueError(f"not a schema: {schema!r}")
    for keyword, value in schema.items():
        if keyword in _SUBSCHEMA:
            _refuse_unknown(value)
        elif keyword in _SUBSCHEMA_LIST:
            for sub in value:
                _refuse_unknown(sub)
        elif keyword in _SUBSCHEMA_MAP:
            for sub in value.values():
                _refuse_unknown(sub)
        elif keyword == "type" and not (isinstance(value, str) and value in _TYPES):
            raise ValueError(f"unknown type {value!r}")
        elif keyword == "const" and not isinstance(value, str):
            raise ValueError(f"const {value!r} is not a string")
        elif keyword == "$ref" and not value.startswith("#/"):
            raise ValueError(f"$ref {value!r} is not within the schema")
        elif keyword not in _OTHER | _ANNOTATIONS:
            raise ValueError(f"unknown schema keyword {keyword!r}")
