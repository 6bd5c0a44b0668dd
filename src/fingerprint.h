/* fingerprint.h - has the configuration changed since an entry was held?
 *
 * A held entry waits for a person or for a changed configuration (a fixed
 * CA file, a rotated token, a corrected map). It records the fingerprint of
 * the configuration it was held under; `retry` sends it again once the
 * fingerprint differs. */
#ifndef PS_FINGERPRINT_H
#define PS_FINGERPRINT_H

#include "config.h"

/* The identity (device, inode, size, modification and change times) of
 * every file the configuration was read from - the main file, include_dir
 * and its *.conf files, token_file, ca_file - and the values that decide
 * where and how requests go (api.url, proxy, cleanup flags, the kind of
 * credential), hashed into 16 hex digits. Nothing secret goes in, nor
 * anything computed from a secret: a token written into the main file or a
 * token file changes that file's times. `touch` on the configuration is
 * therefore a way to have held entries sent again. */
void ps_config_fingerprint(const ps_config_t *cfg, char out[17]);

#endif
