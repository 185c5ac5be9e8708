"""Alerts: a pure evaluator (``conditions``), a notifier (``notify``) and the glue that
keeps one message per condition until it clears (``service``), run after each run and
by beat (``tasks``)."""
