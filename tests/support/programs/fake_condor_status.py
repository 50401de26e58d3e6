#!/usr/bin/env python3
"""Stands in for condor_status: FAKE_STATUS says how it behaves.

``json:<text>`` prints the text and exits 0; ``fail`` exits 1 (no collector);
``hang`` never answers (a collector that accepts and is silent); ``args`` prints
its arguments as a JSON list of one ad.
"""

import json
import os
import sys
import time

mode = os.environ.get("FAKE_STATUS", "json:[]")
if mode.startswith("json:"):
    sys.stdout.write(mode[len("json:") :])
elif mode == "fail":
    sys.stderr.write("Error: Couldn't contact the condor_collector\n")
    sys.exit(1)
elif mode == "hang":
    while True:
        time.sleep(60)
elif mode == "args":
    json.dump(
        [{"argv": sys.argv[1:], "CONDOR_CONFIG": os.environ.get("CONDOR_CONFIG")}], sys.stdout
    )
