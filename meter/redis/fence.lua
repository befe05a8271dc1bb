#!lua name=rlfs1
-- The fence: loaded by rlfs daemons of layout 2 (library rlfs2, rlfs.lua)
-- in place of the library of earlier daemons, so that an earlier daemon
-- still running answers its opens with EIO and this error in its log,
-- instead of writing records of layout 1 into meters that were migrated.
-- docs/fleet.md, "Upgrading": stop every earlier daemon first.

local function fenced()
  return redis.error_reply('RLFS_UPGRADED this Redis serves meters of a newer rlfs (library rlfs2); ' ..
    'stop this daemon and start the newer version on this host')
end

local names = {'acquire', 'cancel', 'release', 'revoke', 'settle', 'dispatch', 'renew', 'start', 'create',
               'setspec', 'setattr', 'delete', 'view', 'reassert', 'admit', 'data_write', 'data_read',
               'data_rename', 'data_delete'}
for i = 1, #names do redis.register_function('rlfs1_' .. names[i], fenced) end
