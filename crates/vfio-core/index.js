// @vfiokit/vfio-core: the native addon's exports, for this machine's target
// (loader.js finds the binary, or says which package holds it).
'use strict';
module.exports = require('./loader').loadBinding(require('./package.json'), __dirname);
