"""Suite-wide setup: every session's journal (on by default) goes to a scratch folder, never the user's."""

from __future__ import annotations

import os
import tempfile

# Set at import so kernels, CLIs and servers started by tests inherit it too.
os.environ.setdefault("CONNECTOR_NB_HOME", tempfile.mkdtemp(prefix="connector-nb-test-home-"))
