"""Storage: SQLAlchemy models, migrations, engines, and the stores that own every query."""

from storage.database import Scope
from storage.engine import DEFAULT_URL, open_engine
from storage.repository import Repository

__all__ = ["DEFAULT_URL", "Repository", "Scope", "open_engine"]
