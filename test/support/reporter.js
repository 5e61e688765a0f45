'use strict';
// Mocha's spec reporter plus one plain closing line, "N passed, N failed, N skipped", that any CI can read.
const Spec = require('mocha/lib/reporters/spec');

class SpecWithSummary extends Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const s = this.stats;
      console.log(`${s.passes} passed, ${s.failures} failed, ${s.pending} skipped`);
    });
  }
}
module.exports = SpecWithSummary;
