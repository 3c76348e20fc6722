"""The Mini App: Operations Home, Schedules, Proposals, Bundles and Stats as web pages that
Telegram opens beside the chat (docs/mini-app.md).

Served by the bot's own HTTP server under /app/: a static shell page, whose small script
asks /app/api/... for each page's HTML (rendered here with Jinja2), sending the signed
`initData` Telegram hands the page with every request. The pages read and write through
the same services as the chat commands, scoped to the chat and role of the Telegram user
that initData names.
"""
