"""Grading solutions handed in for tasks: decided in evaluate, run in sandboxed children, stored by grader."""
