"""Which pull kind is polled by which poller (the registry :data:`.polling.POLLERS`).

One line per kind; importing the face registers them all.
"""

from __future__ import annotations

from daemon.modules.sources.directory_poller import DirectoryPoller
from daemon.modules.sources.feed_poller import FeedPoller
from daemon.modules.sources.http_poller import HttpPoller
from daemon.modules.sources.polling import POLLERS

POLLERS["http"] = HttpPoller
POLLERS["feed"] = FeedPoller
POLLERS["directory"] = DirectoryPoller
