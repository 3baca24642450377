#!/usr/bin/env bash
# Regenerates the README gallery with the real CLI and the embedded weights, 512 px.
# Inputs come from the project's shared image set (../shared/images beside the repo);
# see SOURCES.md here for authors and licences.
set -euo pipefail
cd "$(dirname "$0")"
IMAGES=${IMAGES:-../../../shared/images}
C=$IMAGES/content
S=$IMAGES/styles
run() { jaxstyle --quiet stylize "$@" --max-size 512 --start-size 128 --iterations 60 --quality 90 --overwrite; }

run "$C/chelsea.jpg" "$S/starry_night.jpg" -o chelsea_starry_night.jpg
run "$C/astronaut.jpg" "$S/great_wave.jpg" -o astronaut_great_wave.jpg
run "$C/coffee.jpg" "$S/composition_vii.jpg" -o coffee_composition_vii.jpg
run "$C/china.jpg" "$S/the_scream.jpg" -o china_the_scream.jpg
# Gram vs sliced Wasserstein, same everything else
run "$C/chelsea.jpg" "$S/starry_night.jpg" --style-statistic sliced_wasserstein -o chelsea_starry_night_sw.jpg
# colour preservation
run "$C/china.jpg" "$S/the_scream.jpg" --preserve-color luminance -o china_the_scream_luminance.jpg
run "$C/china.jpg" "$S/the_scream.jpg" --preserve-color knn -o china_the_scream_knn.jpg
# two styles blended
run "$C/astronaut.jpg" "$S/great_wave.jpg" "$S/starry_night.jpg" --style-weights 0.5,0.5 -o astronaut_wave_starry.jpg
# colour only (KNN in Lab space)
jaxstyle --quiet color "$C/coffee.jpg" "$S/water_lilies.jpg" -o coffee_water_lilies_color.jpg --quality 90 --overwrite
