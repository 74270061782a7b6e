from dify_plugin import DifyPluginEnv, Plugin

# INSTALL_METHOD (default "local" = stdio) and the other SDK settings come from the environment.
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=120))

if __name__ == "__main__":
    plugin.run()
