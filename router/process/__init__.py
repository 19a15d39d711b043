"""The processes of `cascade serve --workers N`: the supervisor and what it forks."""
