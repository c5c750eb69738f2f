import logging

import pytest

from adaptive_moe import setup_logging
from adaptive_moe.errors import InvalidInputError


def test_import_does_not_configure_root_logger(run_python):
    code = (
        "import logging, adaptive_moe\n"
        "root = logging.getLogger()\n"
        "pkg = logging.getLogger('adaptive_moe')\n"
        "print(len(root.handlers), [type(h).__name__ for h in pkg.handlers])"
    )
    assert run_python(code)[0].strip() == "0 ['NullHandler']"


def test_setup_logging_console_and_rotating_file(tmp_path):
    log_file = tmp_path / "logs" / "moe.log"
    logger = setup_logging("DEBUG", file=log_file, max_bytes=200, backup_count=2, colour=False)
    try:
        setup_logging("DEBUG", file=log_file, max_bytes=200, backup_count=2, colour=False)  # replaces, no duplicates
        ours = [h for h in logger.handlers if getattr(h, "_adaptive_moe", False)]
        assert sorted(type(h).__name__ for h in ours) == ["RotatingFileHandler", "StreamHandler"]
        for i in range(20):
            logging.getLogger("adaptive_moe.model").debug("message number %d", i)
        for h in ours:
            h.flush()
        assert "message number 19" in log_file.read_text()
        assert (tmp_path / "logs" / "moe.log.1").exists()  # rotated
        assert not (tmp_path / "logs" / "moe.log.3").exists()  # backup_count respected
    finally:
        for h in [h for h in logger.handlers if getattr(h, "_adaptive_moe", False)]:
            logger.removeHandler(h)
            h.close()


def test_bad_level():
    with pytest.raises(InvalidInputError, match="unknown log level 'LOUD'"):
        setup_logging("LOUD")
