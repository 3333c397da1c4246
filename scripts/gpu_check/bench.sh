#!/bin/bash
# bench_train --gpu alone (full and LoRA).
source "$(dirname "$0")/common.sh"
bench_stages
