'use strict';
/**
 * How many of the `slow` requests ([start, duration] pairs, start `offset` ms before the pauses' clock) were
 * outstanding during one of the `pauses` (a flat list of start, end pairs on that clock): a slow request "met" a pause.
 */
function countMet(slow, offset, pauses) {
  let met = 0;
  for (const [start, ms] of slow) {
    const a = offset + start;
    const b = a + ms;
    for (let i = 0; i < pauses.length; i += 2) {
      if (pauses[i] < b && pauses[i + 1] > a) {
        met++;
        break;
      }
    }
  }
  return met;
}

module.exports = { countMet };
