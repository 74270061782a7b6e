from dify_plugin import DifyPluginEnv, Plugin

# Same construction as the original Python plugin. INSTALL_METHOD (default "local" = stdio) and the
# other SDK settings come from the environment or a .env file in the working directory.
plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=120))

if __name__ == "__main__":
    plugin.run()
