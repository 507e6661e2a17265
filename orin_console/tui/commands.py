"""The command palette provider: every console action under a plain name."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from orin_console.tui.app import OrinApp


class ConsoleCommands(Provider):
    """Offers each of the app's bindings (load, unload, move to RAM, ..., quit) by its
    description, with its current key as help, and runs the same action the key runs."""

    def _commands(self) -> list[tuple[str, str, str]]:
        app = cast("OrinApp", self.app)
        return app.command_list()

    async def discover(self) -> Hits:
        for name, help_text, action in self._commands():
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, action in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self.app.run_action, action), text=name,
                          help=help_text)
