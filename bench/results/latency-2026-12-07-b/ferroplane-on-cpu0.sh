#!/bin/bash
exec taskset -c 0 bash -c 'exec -a "$0" ${FERROPLANE_REAL:?the ferroplane binary} "$@"' "$0" "$@"
