"""The board's Telegram side: the ordered long polling (`polling`), the outbox every message leaves through
(`outbox`, paced by `pacing`, requests built by `render`), and the handlers — invitations, the anonymous relay,
chat commands, /start — which answer people through `replies` (into the outbox).

Handlers are thin over `board.service.BoardService` (its synchronous calls run in threads); the dispatcher is
built by `board.bot.app.build_dispatcher`, the process by `board.main.run_board`.
"""
