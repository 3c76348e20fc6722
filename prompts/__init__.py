"""Prompt templates for synthetic updates, as plain text files beside this module.

Placeholders: {date}, {iso_date}, {weekday}, {time}, {timezone}, {schedule_name},
{last_output}. Read by `bot.prompt_files` and rendered by `scheduler.templates`.
"""
