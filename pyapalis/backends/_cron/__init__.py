"""Periodic tasks (apalis-cron): cron schedules on trio's clock.

``_schedule`` turns a cron expression and a time zone into tick times (the
parsing and the daylight-saving rules are cronsim's); ``_stream`` waits for
them on trio's clock and is the :class:`CronStream` users see: an async
iterable of ticks, a backend, and a task source for a ``Pipe``.
"""
