"""The local fakes `tickler demo` runs the real bot against, shipped with it: a strict
Bot API server with a user-side driver (`telegram_server`), an agent stub
(`agent_stub`), and the harness that starts the bot on them (`harness`). The tests use
the same ones (their pytest fixtures are in tests/)."""
