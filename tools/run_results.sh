#!/usr/bin/env bash
# The commands behind tools/RESULTS.md (CPU, 1 BLAS thread). Outputs go to tools/results/.
# Table 1 on Fashion-MNIST runs as two processes (rows 1-3 and 4-5) merged afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
R=tools/results
case "${1:-all}" in
  table1-mnist5k) sibp-np table1 --dataset mnist-5k --runs 5 --epochs 2 --out $R/table1_mnist5k ;;
  table1-fashion-a) sibp-np table1 --dataset fashion-mnist --runs 5 --epochs 2 --rows 1,2,3 --out $R/t1_fm_a ;;
  table1-fashion-b) sibp-np table1 --dataset fashion-mnist --runs 5 --epochs 2 --rows 4,5 --out $R/t1_fm_b ;;
  table1-fashion-merge) python tools/merge_table1.py $R/table1_fashion $R/t1_fm_a $R/t1_fm_b ;;
  figures)
    sibp-np figure 2 --dataset fashion-mnist --epochs 4 --tune --eval-every 110 --train-eval-size 10000 --out $R/figure2
    sibp-np figure 3 --dataset fashion-mnist --widths 2000,500,2000 --epochs 3 --tune --eval-every 110 --train-eval-size 10000 --out $R/figure3
    sibp-np figure 4 --dataset fashion-mnist --time-budget 150 --tune --eval-every 55 --train-eval-size 10000 --out $R/figure4
    sibp-np figure 5 --dataset fashion-mnist --widths 2000,500,2000 --time-budget 90 --eval-every 55 --train-eval-size 10000 --out $R/figure5
    ;;
  *) echo "usage: $0 table1-mnist5k|table1-fashion-a|table1-fashion-b|table1-fashion-merge|figures"; exit 2 ;;
esac
