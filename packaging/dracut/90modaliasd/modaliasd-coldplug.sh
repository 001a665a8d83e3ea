#!/bin/sh
# dracut pre-udev hook: load the drivers for every present device, then the ones behind them.
modaliasd coldplug --timeout 30 || warn "modaliasd: coldplug finished with errors"
