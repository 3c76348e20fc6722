"""Adapters: the I/O behind the core's protocols (HTTP dispatch to the agent, the
system clock, the process's identity, the id source). `scheduler/` never imports them;
the bot and the bench wire them in."""
