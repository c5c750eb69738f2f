"""Knowledge gaps: the durable ledger of queries nothing covers, and their analysis into candidate
domains for new experts."""

from .analysis import GapCluster, GapReport, analyze_gaps
from .ledger import GapEntry, GapLedger

__all__ = ["GapCluster", "GapEntry", "GapLedger", "GapReport", "analyze_gaps"]
