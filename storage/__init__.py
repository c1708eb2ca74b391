"""Storage: SQLAlchemy models, engines and the repository that owns every query."""

from storage.engine import DEFAULT_URL, open_engine
from storage.repository import BaselineRecord, Candidate, Repository, Scope, TrialRecord, UpperBound

__all__ = ["DEFAULT_URL", "BaselineRecord", "Candidate", "Repository", "Scope", "TrialRecord", "UpperBound", "open_engine"]
