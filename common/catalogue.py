"""Texts people read, from Project Fluent catalogues (one `.ftl` file per language), so counts take the plural
form CLDR gives each language (1 объявление, 2 объявления, 5 объявлений, 21 объявление).

`Catalogue(folder, file, languages, default)` reads `folder/<lang>/<file>` on first use (Fluent and Babel
cost ~130 ms to import). Keys are dotted (`error.ad_limit`); the catalogue's ids are the same with dashes, as
Fluent ids cannot hold dots. Numbers select plural forms and print as they are (no digit grouping). A
catalogue that does not parse is an error, never a silently missing text.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fluent.runtime import FluentBundle


class CatalogueError(ValueError):
    """A catalogue that does not parse, or a text formatted without a value it needs."""


def message_id(key: str) -> str:
    """The catalogue id of a dotted key (Fluent ids cannot hold dots)."""
    return key.replace(".", "-")


def fluent_value(value: object) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        from fluent.runtime.types import fluent_number

        return fluent_number(value, useGrouping=False)  # ids and counts as they are: 12345, not 12 345
    return value if isinstance(value, str) else str(value)


class Catalogue:
    def __init__(self, folder: Path, file: str, languages: tuple[str, ...], default: str) -> None:
        self.folder = folder
        self.file = file
        self.languages = languages
        self.default = default
        self._bundles: dict[str, FluentBundle] = {}
        self._loading = threading.Lock()

    def path(self, lang: str) -> Path:
        return self.folder / lang / self.file

    def load(self, lang: str) -> FluentBundle:
        """Parse one language's catalogue; a syntax error anywhere in it is an error."""
        from fluent.runtime import FluentBundle, FluentResource
        from fluent.syntax import ast

        resource = FluentResource(self.path(lang).read_text(encoding="utf-8"))
        junk = [entry for entry in resource.body if isinstance(entry, ast.Junk)]
        if junk:
            problems = "; ".join(f"{a.code} {a.message}" for entry in junk for a in entry.annotations)
            raise CatalogueError(f"{self.path(lang)}: {problems or 'unparsable entry'}: {junk[0].content[:80]!r}")
        # No Unicode isolation marks around values: Telegram's HTML and the tests want the plain text.
        bundle = FluentBundle([lang], use_isolating=False)
        bundle.add_resource(resource)
        return bundle

    def bundle(self, lang: str) -> FluentBundle:
        lang = lang if lang in self.languages else self.default
        bundle = self._bundles.get(lang)
        if bundle is None:
            with self._loading:
                bundle = self._bundles.get(lang)
                if bundle is None:
                    bundle = self._bundles[lang] = self.load(lang)
        return bundle

    def has(self, lang: str, key: str) -> bool:
        return self.bundle(lang).has_message(message_id(key))

    def ids(self, lang: str) -> set[str]:
        """Every message id in a language's catalogue (for tests that compare catalogues)."""
        from fluent.syntax import FluentParser, ast

        body = FluentParser().parse(self.path(lang).read_text(encoding="utf-8")).body
        return {entry.id.name for entry in body if isinstance(entry, ast.Message)}

    def variables(self, lang: str) -> dict[str, set[str]]:
        """Each message id of a language's catalogue -> the variables its text uses (for tests that check a
        text asks only for values its code supplies)."""
        from fluent.syntax import FluentParser, ast
        from fluent.syntax.visitor import Visitor

        class Collect(Visitor):
            def __init__(self) -> None:
                super().__init__()
                self.names: set[str] = set()

            def visit_VariableReference(self, node: ast.VariableReference) -> None:  # noqa: N802 - Fluent's
                self.names.add(node.id.name)

        found: dict[str, set[str]] = {}
        for entry in FluentParser().parse(self.path(lang).read_text(encoding="utf-8")).body:
            if isinstance(entry, ast.Message):
                collect = Collect()
                collect.visit(entry)
                found[entry.id.name] = collect.names
        return found

    def text(self, lang: str, key: str, **values: object) -> str:
        """The text `key` in `lang` (else in the default language) with `values` put in; KeyError if neither
        has it, CatalogueError if a value it needs is missing."""
        ident = message_id(key)
        bundle = self.bundle(lang)
        if not bundle.has_message(ident):
            bundle = self.bundle(self.default)
            if not bundle.has_message(ident):
                raise KeyError(key)
        pattern = bundle.get_message(ident).value
        if pattern is None:
            raise KeyError(key)
        text, errors = bundle.format_pattern(pattern, {name: fluent_value(v) for name, v in values.items()})
        if errors:
            raise CatalogueError(f"{key}: {'; '.join(str(error) for error in errors)}")
        return text
