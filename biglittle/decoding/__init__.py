"""The decode loop, its policies, acceptance rules, schedules and sampling."""
