"""The board's Telegram side: invitations (`deliver_invite`), the anonymous relay, chat commands, /start.

Handlers are thin over `board.service.BoardService` (its synchronous calls run in threads); the dispatcher is
built by `board.bot.app.build_dispatcher`, the process by `board.main.run_board`.
"""

from __future__ import annotations

from board.bot.invites import deliver_invite

__all__ = ["deliver_invite"]
