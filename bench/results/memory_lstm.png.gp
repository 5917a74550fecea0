set terminal pngcairo size 1400,560 font ',10'
set output 'bench/results/memory_lstm.png'
set datafile separator ','
set key top left
set grid
set logscale x
set multiplot layout 1,2 title 'lstm, hidden 128, batch 32, input 64'
set logscale y
set title 'tape peak memory'
set xlabel 'sequence length T'
set ylabel 'MiB'
plot 'bench/results/memory_lstm.csv' using ($1 == 0 ? $3 : 1/0):($4/1048576) with linespoints title 'full', 'bench/results/memory_lstm.csv' using ($1 == 1 ? $3 : 1/0):($4/1048576) with linespoints title 'truncated:20', 'bench/results/memory_lstm.csv' using ($1 == 2 ? $3 : 1/0):($4/1048576) with linespoints title 'checkpointed', 'bench/results/memory_lstm.csv' using 3:($6/1048576) with lines dashtype 2 lc rgb 'black' title 'minimum saved activations (full)'
unset logscale y
set title 'throughput'
set ylabel 'time steps x batch / s'
plot 'bench/results/memory_lstm.csv' using ($1 == 0 ? $3 : 1/0):8 with linespoints title 'full', 'bench/results/memory_lstm.csv' using ($1 == 1 ? $3 : 1/0):8 with linespoints title 'truncated:20', 'bench/results/memory_lstm.csv' using ($1 == 2 ? $3 : 1/0):8 with linespoints title 'checkpointed'
unset multiplot
