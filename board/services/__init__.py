"""The board's rules, one module per aggregate, composed into `board.service.BoardService`."""
